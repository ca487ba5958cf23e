"""The identity services: users, tokens, groups, projects, members, and the policy that decides
what a caller may do (GitLab's permission model).

Services take the ``Services`` context (the database and what a change must set off), own
their transactions, make every authorization decision and return ``gateway.models`` values.
"""
