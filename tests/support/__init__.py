"""What the tests and the benchmarks share: a real server, load, images with known text, metric scrapes.

Nothing here fakes the product, except `fake_loader`, which stands in for the model loader so that the
lifecycle controller's decisions can be driven in-process: servers are real Gunicorn processes started
with `ocr-server serve`, load is real HTTP, models are the real PP-OCR weights.
"""
