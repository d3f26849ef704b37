"""Seeing a run: the status table, ancestry and show (report), Pareto and progress
figures (plots), the static HTML report (html_report), what a generation in progress
prints (progress, lines, tally) and its live terminal display (live), and
re-measuring an individual against its note (verify). It may import every layer
below it; nothing but project and cli imports it.
"""
