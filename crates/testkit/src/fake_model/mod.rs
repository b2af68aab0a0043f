//! Fake model endpoints (Anthropic Messages API, OpenAI Responses API) for running the real agent CLIs offline.
