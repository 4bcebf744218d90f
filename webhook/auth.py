"""Who is calling the officials' API: the bearer token's principal, and the programme's rule
violations as HTTP answers.

Errors have one body shape, `{"detail": {"code": ..., "message": ...}}`, with the stable codes
of `storage.rules.RuleViolation`. The status follows from the code:

| status | when | codes |
|---|---|---|
| 401 | no token, a malformed, unknown or revoked one (with `WWW-Authenticate: Bearer`), before any other error | `not_authenticated`, `invalid_token` |
| 403 | the token's role may not do this, or not in this place | `role_not_allowed`, `out_of_scope` |
| 404 | what the path or body names does not exist | `unknown_*` |
| 409 | the request is well-formed but the current state forbids it | `transition_not_allowed`, `merge_target_inactive`, `not_a_candidate`, `council_empty`, `vote_not_due` |
| 422 | the request itself breaks a rule (FastAPI's own validation errors keep their shape) | everything else: `note_required`, `merge_into_self`, `scope_mismatch`, ... |
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, Security, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from storage.rules import RuleViolation
from storage.services import audit, tokens
from storage.services.access import Principal
from webhook.deps import SessionDep, get_runtime

SCHEME_NAME = "bearerToken"
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME_NAME,
    bearerFormat="ms_<prefix>_<secret>",
    description="An officials' API token from `minsheng token create --role ROLE --scope NAME`.",
)

FORBIDDEN_CODES = frozenset({"role_not_allowed", "out_of_scope"})
# The request is well-formed; what it acts on is not in a state that allows it (it may
# succeed once that changes: another screening step, members joining the council).
CONFLICT_CODES = frozenset(
    {
        "transition_not_allowed",
        "merge_target_inactive",
        "not_a_candidate",
        "council_empty",
        "vote_not_due",
    }
)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["out_of_scope"])
    message: str = Field(examples=["this community is outside your scope"])


class ErrorOut(BaseModel):
    detail: ErrorDetail


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def status_for(code: str) -> int:
    if code in FORBIDDEN_CODES:
        return status.HTTP_403_FORBIDDEN
    if code.startswith("unknown_"):
        return status.HTTP_404_NOT_FOUND
    if code in CONFLICT_CODES:
        return status.HTTP_409_CONFLICT
    return status.HTTP_422_UNPROCESSABLE_CONTENT


def http_error(violation: RuleViolation) -> HTTPException:
    """The HTTPException a front end raises for a rule violation."""
    return HTTPException(
        status_code=status_for(violation.code),
        detail=error_body(violation.code, str(violation)),
    )


def _unauthorized(code: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=error_body(code, message),
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("not_authenticated", "an `Authorization: Bearer <token>` is required")
    found = await tokens.authenticate_token(session, credentials.credentials)
    if found is None:
        raise _unauthorized("invalid_token", "the token is not valid or has been revoked")
    # What this request records in the audit trail names the token that asked (its public
    # prefix): the session is the request's own, shared with the route (FastAPI caches it).
    audit.attribute_to_token(session, found.token)
    return found.principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _needs_principal(dependant: Dependant) -> bool:
    return any(sub.call is get_principal or _needs_principal(sub) for sub in dependant.dependencies)


class AuthenticatedRoute(APIRoute):
    """The officials' routes: a rule the request breaks answers its HTTP error
    (`http_error`), and a caller who is not authenticated is told so first (401), whatever
    else is wrong with the request.

    FastAPI decodes a JSON body before it solves a route's dependencies, so a body that is
    not JSON would answer 422 to anyone, token or none. Every other fault of the request is
    found after `get_principal` has run (and answered 401 if it had to). So on that one
    error, a route that takes a principal authenticates the request the same way, then
    answers the error if that passes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_principal = _needs_principal(self.dependant)

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RuleViolation as violation:
                raise http_error(violation) from violation
            except RequestValidationError as error:
                if not needs_principal or not any(
                    e.get("type") == "json_invalid" for e in error.errors()
                ):
                    raise  # found after the principal: the caller is authenticated
                runtime = await get_runtime(request)
                credentials = await bearer_scheme(request)
                async with runtime.sessionmaker() as session:
                    await get_principal(session, credentials)  # 401 unless authenticated
                raise

        return handle


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    described = {
        401: "No token, or a malformed, unknown or revoked one.",
        403: "The token's role may not do this, or not in this community (`role_not_allowed`, "
        "`out_of_scope`).",
        404: "What the request names does not exist (`unknown_*`).",
        409: "The current state does not allow it (e.g. `transition_not_allowed`).",
        422: "The request breaks a rule or does not validate.",
    }
    return {
        code: {"description": described[code]} | ({} if code == 422 else {"model": ErrorOut})
        for code in codes
    }


__all__ = [
    "AuthenticatedRoute",
    "PrincipalDep",
    "bearer_scheme",
    "error_body",
    "error_responses",
    "get_principal",
    "http_error",
    "status_for",
]
