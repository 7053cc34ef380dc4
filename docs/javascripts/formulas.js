// Display formulas fit their column. KaTeX does not break a display formula across
// lines, so one wider than the column (a long formula on a phone) is scaled down until
// it fits, to MIN_SCALE at the least; one that is still too wide scrolls sideways in its
// box (docs/stylesheets/attnkit.css gives that box a scrollbar and edge shadows).
//
// Each formula's box, div.arithmatex, records the outcome in data-fit: "fits" (at full
// size), "scaled" (data-scale says how much) or "scrolls". Runs after katex.js has
// typeset the page (this file is listed after it), when the fonts have loaded, and
// when the window changes size.
(() => {
  const MIN_SCALE = 0.7;

  // The formula's own width: its typeset content, not the box around it.
  function naturalWidth(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    return range.getBoundingClientRect().width;
  }

  function fit(box) {
    const display = box.querySelector(".katex-display");
    const content = display && display.querySelector(".katex-html");
    if (!content) return;
    display.style.fontSize = "";
    // Leave a little room on each side, so that a scaled formula does not touch the edges.
    const room = 0.5 * parseFloat(getComputedStyle(document.documentElement).fontSize);
    const available = box.clientWidth - 2 * room;
    const natural = naturalWidth(content);
    let scale = 1;
    if (natural > available) {
      scale = Math.max(MIN_SCALE, Math.floor((100 * available) / natural) / 100);
      display.style.fontSize = `${scale}em`;
    }
    const scrolls = box.scrollWidth > box.clientWidth;
    box.dataset.fit = scrolls ? "scrolls" : scale < 1 ? "scaled" : "fits";
    box.dataset.scale = scale.toFixed(2);
    // A box that scrolls can be reached and scrolled from the keyboard.
    if (scrolls) box.tabIndex = 0;
    else box.removeAttribute("tabindex");
  }

  function fitAll(root) {
    for (const box of root.querySelectorAll("div.arithmatex")) fit(box);
  }

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => fitAll(document.body));
  });

  document$.subscribe(({ body }) => {
    fitAll(body);
    // KaTeX's fonts change the widths once they have loaded.
    document.fonts.ready.then(() => fitAll(body));
  });
})();
