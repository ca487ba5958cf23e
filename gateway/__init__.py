"""packgate: a GitLab-compatible generic package registry in front of S3 and PostgreSQL."""

__version__ = "0.1.0"
