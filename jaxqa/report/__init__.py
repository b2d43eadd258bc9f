"""What a run shows. The page (`eval_report.html`, `compare_report.html`): a run's files read (runs), the
metrics section (summary), breakdowns by kind of question (breakdowns), SVG charts (charts), SQuAD v2.0's
answer-or-abstain section (abstain), the question table's data (questions), assembled into one file with
page.html/page.css/page.js inlined (page); the `compare` command (compare); training_curves.png (plots).
The statistics the page draws are `jaxqa.scoring.statistics`."""
