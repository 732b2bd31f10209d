/* After a form posted (an action, a failed submit), the keyboard and screen-reader user starts where the answer
 * is: the first element marked data-xp-focus (the error summary, else the messages), not the top of the page.
 * A page that puts the focus in a field itself (autofocus: the login form) keeps it there. */
(() => {
  "use strict";
  const target = document.querySelector("[data-xp-focus]");
  if (target && !document.querySelector("[autofocus]")) target.focus();
})();
