"""Inference runtimes: each turns a model file into a thread-safe `InferenceSession`."""

from server.runtime.base import InferenceSession, RuntimeOptions, open_session

__all__ = ["InferenceSession", "RuntimeOptions", "open_session"]
