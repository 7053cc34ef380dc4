// Typeset the math that pymdownx.arithmatex marks up, with the KaTeX the site serves itself.
// `document$` is the theme's page-load observable, so this also runs after instant navigation.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      // A formula KaTeX cannot parse is logged as a console error, which the browser test catches.
      throwOnError: true,
    });
  }
});
