"""OCR inference server with hot model reload."""
