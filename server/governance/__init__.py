"""Model governance: signed versions, role-based access, and the tamper-evident audit trail.

Nothing here knows HTTP (no Flask imports): the HTTP layer maps the typed results of this package -
`verify.SignatureStatus`, `access.Decision` - to responses, and the lifecycle calls `verify_version`
and `AuditLog.append`.

    signing.py    the OpenSSF model-signing bundle format: sign a version directory, read a signature
    trust.py      trusted public keys (which pipelines each may sign for) and the revocation list
    verify.py     is this version signed by a trusted, unrevoked key, and unchanged since? (typed status)
    reloading.py  a parsed file that is re-read when it changes on disk (policy, keys, revocations)
    roles.py      roles, actions, and the one table of which role may do what
    tokens.py     JWT bearer tokens checked offline against a JWKS file
    policy.py     the access policy file (API keys, JWT settings, anonymous roles, four-eyes)
    access.py     authenticate a request's credentials and authorise an action: a typed decision
    audit.py      the hash-chained JSON-lines audit log, its verification and a paging reader
    syslog.py     forwarding audit records to a SIEM as RFC 5424 syslog over UDP or TCP
"""
