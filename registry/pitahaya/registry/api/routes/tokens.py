"""``/api/v1/tokens``: mint, list and revoke API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from pitahaya.registry.api.deps import AdminDep, SessionDep
from pitahaya.registry.api.responses import JSON_WRITE
from pitahaya.registry.schemas import TokenCreate, TokenCreated, TokenPublic
from pitahaya.registry.services import tokens as service

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated, responses={**JSON_WRITE, 409: {}})
def create_token(body: TokenCreate, session: SessionDep, actor: AdminDep) -> TokenCreated:
    """Mint a token with a role; the response holds its secret, which is never shown again."""
    row, secret = service.create_token(session=session, name=body.name, role=body.role, actor=actor.name)
    return TokenCreated.model_validate({**TokenPublic.model_validate(row).model_dump(), "secret": secret})


@router.get("", response_model=list[TokenPublic], responses={401: {}, 403: {}})
def list_tokens(session: SessionDep, _actor: AdminDep) -> list[TokenPublic]:
    """List tokens (names, roles, revocation), never their secrets."""
    return [TokenPublic.model_validate(row) for row in service.list_tokens(session=session)]


@router.delete("/{name}", response_model=TokenPublic, responses={401: {}, 403: {}, 404: {}})
def revoke_token(
    name: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")], session: SessionDep, actor: AdminDep
) -> TokenPublic:
    """Revoke a token: requests with it fail with 401 from now on."""
    return TokenPublic.model_validate(service.revoke_token(session=session, name=name, actor=actor.name))
