"""Documents as clients send them (PDFs, multi-page TIFFs, single images) -> pages to read.

Kept free of heavy imports: `server.documents.pdfium_worker` runs as its own small process and
imports this package first.
"""
