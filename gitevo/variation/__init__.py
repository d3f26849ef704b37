"""Making children: the gene blocks of a file (genome), unified diffs and their
tolerant application (patch), the offline operators (offline), one planned child
(spec) made into a checked commit (operators), and with an LLM the prompts (prompts),
the conversation with its repair turns (guided) and what is kept of an answer
(responses). It may import core, llm, config, store and execution (a guided child's
checks run as it is proposed).
"""
