"""The style sheet shared by canet's HTML pages (run and evaluation reports, comparisons)."""

PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.meta{color:#555;font-size:.9em}.case{margin:1em 0}.curves img{max-width:48%;margin:.3em}
.warning{background:#fff3cd;border:1px solid #e0b000;padding:.5em .8em}
img{max-width:100%}
"""
