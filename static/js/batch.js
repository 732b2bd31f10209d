/* The batch form's memory follows the template picked (each template's own memory, from #template-memory),
 * until the instructor types a value of their own. */
(() => {
  "use strict";
  const data = document.getElementById("template-memory");
  const template = document.getElementById("id_template");
  const memory = document.getElementById("id_memory_mb");
  if (!data || !template || !memory) return;
  const defaults = JSON.parse(data.textContent);
  const own = () => defaults[template.value];
  // A value already there that is not the template's own was typed (a form shown again keeps it).
  let typed = memory.value !== "" && own() !== undefined && memory.value !== String(own());
  memory.addEventListener("input", () => { typed = true; });
  template.addEventListener("change", () => {
    if (!typed && own() !== undefined) memory.value = own();
  });
})();
