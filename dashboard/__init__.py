"""FastAPI app and live web page."""
