/* The pages' live sections (the lab's table, the guest's state and job log), polled by htmx.
 *
 * A swap replaces a section whole. Two things would go with it, and this script keeps them:
 * - the keyboard user's place: the control that had the focus gets it back in the new section (the same id,
 *   else the same position), even when it has just become disabled (it then stays focusable, marked
 *   aria-disabled and inert, until the user leaves it); an open <details> stays open;
 * - what changed, for screen readers: elements carrying data-said (a text) and data-said-key (what it is about)
 *   are compared before and after, and the new texts are written into the page's one persistent status region
 *   (#live-status, outside the swapped sections: a region inserted by a swap is often not read).
 * The sections poll only when something may have changed (the server answers 204 otherwise), and a section
 * whose row menu is open does not poll at all (hx-trigger filter), so a swap never closes a menu under the user.
 */
(() => {
  "use strict";
  const FOCUSABLE = "a[href], button, input, select, textarea, summary";
  // Past this many rows changing at once (a batch provisioning), the progress line says it better.
  const MAX_ROW_MESSAGES = 3;
  let said = null;
  let hadFocus = false;

  const isLive = (elt) => elt && elt.matches && elt.matches("[data-live]");

  function saidIn(root) {
    const out = new Map();
    for (const elt of root.querySelectorAll("[data-said-key]")) out.set(elt.dataset.saidKey, elt.dataset.said || "");
    return out;
  }

  function announce(texts) {
    const region = document.getElementById("live-status");
    if (!region || !texts.length) return;
    region.textContent = texts.join(". ");
  }

  // `roots`: the swapped section and what comes with it out of band (the job log), each by its id.
  function keepPlace(roots, detail) {
    const active = document.activeElement;
    hadFocus = roots.some((root) => active !== root && root.contains(active));
    const anyOpen = roots.some((root) => root.querySelector("details[open]"));
    if (!hadFocus && !anyOpen) return;
    const tpl = document.createElement("template");
    tpl.innerHTML = detail.serverResponse;
    for (const root of roots) {
      const fresh = tpl.content.getElementById(root.id);
      if (!fresh) continue;
      const open = Array.from(root.querySelectorAll("details"), (d) => d.open);
      fresh.querySelectorAll("details").forEach((d, i) => {
        if (open[i]) d.open = true;
      });
      if (active === root || !root.contains(active)) continue;
      let twin = active.id ? tpl.content.getElementById(active.id) : null;
      if (!twin) twin = fresh.querySelectorAll(FOCUSABLE)[Array.from(root.querySelectorAll(FOCUSABLE)).indexOf(active)];
      if (!twin) continue;
      twin.setAttribute("data-xp-refocus", "");
      if (twin.disabled) {
        // Disabled controls cannot hold the focus; this one stays reachable, inert, until the user moves on.
        twin.disabled = false;
        twin.setAttribute("aria-disabled", "true");
        twin.setAttribute("data-xp-held", "");
      }
    }
    detail.serverResponse = tpl.innerHTML;
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    if (!isLive(target) || !event.detail.shouldSwap) return;
    // A job log comes out of band along with the guest's section.
    const log = document.getElementById("job-log");
    const roots = log && !target.contains(log) ? [target, log] : [target];
    said = new Map(roots.flatMap((root) => [...saidIn(root)]));
    keepPlace(roots, event.detail);
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    const section = event.target;
    if (!isLive(section)) return;
    const back = document.querySelector("[data-xp-refocus]");
    if (back) {
      back.removeAttribute("data-xp-refocus");
      if (document.activeElement !== back) back.focus({ preventScroll: true });
    } else if (hadFocus && !section.contains(document.activeElement)) {
      // The control is gone (its row left the filter): the section itself, not the top of the page.
      section.focus({ preventScroll: true });
    }
    hadFocus = false;
    if (said === null) return;
    const now = saidIn(document);
    const rows = [];
    const others = [];
    for (const [key, text] of now) {
      if (!text || said.get(key) === text) continue;
      (key.startsWith("vm-") ? rows : others).push(text);
    }
    said = null;
    announce(rows.length > MAX_ROW_MESSAGES ? others : [...rows, ...others]);
  });

  // A control kept focusable after it became disabled does nothing, and is disabled for good once left.
  document.addEventListener(
    "click",
    (event) => {
      if (event.target.closest && event.target.closest("[data-xp-held]")) event.preventDefault();
    },
    true,
  );
  document.addEventListener("focusout", (event) => {
    const held = event.target;
    if (!held.hasAttribute || !held.hasAttribute("data-xp-held")) return;
    held.removeAttribute("data-xp-held");
    held.removeAttribute("aria-disabled");
    held.disabled = true;
  });
})();
