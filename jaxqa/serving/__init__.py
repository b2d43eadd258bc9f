"""`jaxqa serve`: a fine-tuned model behind HTTP. `command` (flags, start-up), `app` (the Starlette routes),
`schema` (the request body, checked), `batcher` (the one worker that owns the device), `metrics` (Prometheus).
Starlette, uvicorn (with httptools) and prometheus-client come with the extra: pip install 'jaxqa[serve]'."""
