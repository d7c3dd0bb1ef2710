"""Question sets for prompts: schema, decomposers (rule, llm, file), jinja2 templates, cache and lint."""
