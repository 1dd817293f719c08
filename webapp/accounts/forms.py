from __future__ import annotations

from django import forms


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use this key, e.g. “langchain notebook”.")
