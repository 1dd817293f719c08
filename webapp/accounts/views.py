from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts import selectors, services
from webapp.accounts.forms import ApiKeyCreateForm
from webapp.api.selectors import usage_by_key
from webapp.core.errors import ValidationFailed

NEW_KEY_SESSION = "accounts.new_api_key"


@require_http_methods(["GET", "POST"])
def key_list(request: HttpRequest) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.api_key_create(owner=request.user, name=form.cleaned_data["name"])
        except ValidationFailed as exc:
            form.add_error(exc.field, exc.message)
        else:
            # Post/redirect/get: the raw key rides in the session for exactly
            # one page view, so a reload neither re-shows nor re-creates it.
            request.session[NEW_KEY_SESSION] = {"name": issued.api_key.name, "raw": issued.raw}
            return redirect("accounts:key-list")
    new_key = request.session.pop(NEW_KEY_SESSION, None)
    keys = selectors.api_key_list(user=request.user)
    usage = {row["id"]: row for row in usage_by_key(keys=keys)}
    for key in keys:
        key.usage = usage.get(key.pk)
    status = 400 if form.errors else 200
    return render(request, "accounts/key_list.html", {"form": form, "keys": keys, "new_key": new_key}, status=status)


@require_POST
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = selectors.api_key_get(user=request.user, pk=pk)
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” revoked: requests using it now get 401.")
    return redirect("accounts:key-list")
