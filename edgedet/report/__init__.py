"""`edgedet report`: one self-contained HTML page (inline CSS, base64 PNGs) from the JSON a
run directory already holds (search, export, bench, predict outputs), with each section's
data written beside it as report/<section>.json."""
