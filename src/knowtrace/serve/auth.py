"""Bearer API keys: every ``/v1`` and ``/xapi`` route runs for the tenant of the key it was called with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from knowtrace.serve.errors import ApiError

__all__ = ["Tenant", "require_tenant"]

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                     description="An API key (`knowtrace keys create --tenant NAME`), sent as `Authorization: Bearer KEY`.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_tenant(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The tenant of the request's API key; 401 when the key is missing, malformed, unknown or revoked."""
    if credentials is None:
        given = request.headers.get("authorization")
        reason = ("missing API key: send the header 'Authorization: Bearer KEY' (create a key with "
                  "`knowtrace keys create --tenant NAME`)") if not given else \
            "the Authorization header must read 'Bearer KEY'"
        raise ApiError(401, reason, headers=_CHALLENGE)
    found, status = request.app.state.services.keys.lookup(credentials.credentials.strip())
    if status == "malformed":
        raise ApiError(401, "malformed API key: keys look like kt_<key id>_<secret>", headers=_CHALLENGE)
    if status == "unknown" or found is None:
        raise ApiError(401, "unknown API key", headers=_CHALLENGE)
    if status == "revoked":
        raise ApiError(401, f"API key {found.key_id} was revoked at {found.revoked_at}", headers=_CHALLENGE)
    return found.tenant


#: the tenant of the request (declare a parameter ``tenant: Tenant``)
Tenant = Annotated[str, Depends(require_tenant)]
