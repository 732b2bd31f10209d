/* After a form posted (an action, a failed submit), the keyboard and screen-reader user starts where the answer
 * is: the first element marked data-xp-focus (the error summary, else the messages), not the top of the page. */
(() => {
  "use strict";
  const target = document.querySelector("[data-xp-focus]");
  if (target) target.focus();
})();
