"""Foundations that every layer may use and that know nothing of the layers above:
the errors raised on more than one layer (errors), the progress events that the
pipeline emits and the displays read (events), and where gitevo's shipped files live
(resources: templates, prompts, hooks). It imports nothing of gitevo.
"""
