"""Resumable uploads: the session engine behind tus 1.0 and the IETF resumable upload protocol."""
