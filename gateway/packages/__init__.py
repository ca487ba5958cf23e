"""Packages and their files: the services behind the generic package path and the Packages
API, one module per responsibility.

Bytes and rows are kept in a safe order: the object is complete before its row is written, a
commit that fails removes the object, and a row is never visible before its object is. Deletion
runs the other way round: the rows go, and their objects are queued for removal, in one
transaction (the schema's trigger); ``gateway.deletions`` then removes the objects and retries
until they are gone, so neither a crash nor an S3 outage leaves a row without its object or an
object that nothing points to.
"""
