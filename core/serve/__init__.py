"""Serving a trained model: an OpenAI-compatible HTTP API with continuous batching, and a web page.

`batcher` runs the model in one thread and decodes every request together; `text_stream` turns each
request's tokens into text (whole characters, stop strings); `openai_schema` checks requests and
writes OpenAI's response bodies; `app` holds the HTTP routes; `server` starts it all for the CLI.
"""
