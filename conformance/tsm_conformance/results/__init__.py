"""Results people hand over and compare (docs/results.md): a run's results read back from a bundle
or a JUnit file (``model``), the bundle a run writes (``record``, ``bundle``), the HTML report
(``html``), run-to-run comparison (``compare``)."""
