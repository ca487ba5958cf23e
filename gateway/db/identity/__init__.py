"""Named SQL for users, tokens, groups, projects and memberships, one module per resource.

Every function returns the frozen values of ``gateway.models`` (or plain scalars), never an
asyncpg record.
"""
