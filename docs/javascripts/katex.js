// Typeset the math that pymdownx.arithmatex marks up, with the KaTeX the site serves itself.
// `document$` is the theme's page-load observable, so this also runs after instant navigation.
// The table of contents repeats a heading's formula as plain text: typeset it there too.
document$.subscribe(({ body }) => {
  const headingsWithMath = [...body.querySelectorAll(".md-nav__link")].filter((link) =>
    link.textContent.includes("\\("),
  );
  for (const element of [...body.querySelectorAll(".arithmatex"), ...headingsWithMath]) {
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
