// The scale slider on the stage 2 page. The figure (docs/_scripts/attnviz.py, scale_heatmap)
// carries the weights for each divisor, computed when the site was built, with every cell's
// colour and label; moving the slider swaps them in. Nothing is computed or fetched here.
(function () {
  "use strict";

  function setUp(figure) {
    if (figure.dataset.ready === "true") return;
    const data = JSON.parse(figure.dataset.scales);
    const slider = figure.querySelector(".attnkit-scale-slider");
    const readout = figure.querySelector(".attnkit-scale-readout");
    const summary = figure.querySelector(".attnkit-scale-summary");
    const cells = [...figure.querySelectorAll(".attnkit-scale-cell")].map((cell) => ({
      row: Number(cell.dataset.row),
      column: Number(cell.dataset.column),
      rect: cell.querySelector("rect"),
      text: cell.querySelector("text"),
    }));

    function draw(index) {
      const scale = data.scales[index];
      for (const { row, column, rect, text } of cells) {
        rect.setAttribute("fill", scale.fills[row][column]);
        text.setAttribute("fill", scale.inks[row][column]);
        text.textContent = scale.labels[row][column];
      }
      figure.dataset.scale = scale.key;
      figure.dataset.divisor = String(scale.divisor);
      readout.textContent = scale.label;
      summary.textContent = scale.summary;
      slider.setAttribute("aria-valuetext", scale.label);
    }

    slider.addEventListener("input", () => draw(Number(slider.value)));
    slider.disabled = false;
    figure.dataset.ready = "true";
    draw(Number(slider.value));
  }

  function setUpAll(root) {
    for (const figure of root.querySelectorAll(".attnkit-scale-heatmap")) setUp(figure);
  }

  // `document$` is the theme's page-load observable: it also fires after instant navigation.
  if (typeof document$ !== "undefined") {
    document$.subscribe(({ body }) => setUpAll(body));
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => setUpAll(document));
  } else {
    setUpAll(document);
  }
})();
