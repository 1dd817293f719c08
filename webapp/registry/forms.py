"""The import page's two forms. They only parse fields; the rules (names,
safe extraction, the transformers check) live in services/imports, whose
errors the view puts back on the field they name."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from webapp.core.errors import DomainError
from webapp.registry import imports, services
from webapp.registry.models import ArtifactKind, ModelArtifact


class _ImportForm(forms.Form):
    name = forms.CharField(
        max_length=100, required=False,
        help_text="Letters, digits, '.', '_' and '-'; defaults to the file or folder name. "
                  "Importing a name again adds a version.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    kind = forms.ChoiceField(choices=ArtifactKind.choices, initial=ArtifactKind.BASE)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def add_service_error(self, error: DomainError) -> None:
        self.add_error(error.field if error.field in self.fields else None, error.message)


class TarballImportForm(_ImportForm):
    field_order = ["file", "name", "kind", "description"]
    file = forms.FileField(
        label="Model archive",
        widget=forms.ClearableFileInput(attrs={"accept": ".tar.gz,.tgz,.tar,application/gzip,application/x-tar"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            "A .tar.gz, .tgz or .tar of a transformers model folder (config.json, tokenizer files, "
            f"*.safetensors or pytorch_model*.bin), up to {imports.mib(settings.REGISTRY_MAX_IMPORT_BYTES)} unpacked. "
            "Its content may sit in one top-level folder."
        )

    def save(self, *, owner: AbstractBaseUser) -> ModelArtifact:
        data = self.cleaned_data
        return services.artifact_import_tarball(
            owner=owner, name=data["name"] or imports.name_from(data["file"].name or ""), upload=data["file"],
            kind=data["kind"], description=data["description"],
        )


class FolderImportForm(_ImportForm):
    field_order = ["folder", "name", "kind", "description"]
    folder = forms.CharField(
        label="Folder on the server", max_length=1000,
        help_text="An absolute path. Inside ARTIFACTS_ROOT the folder is registered where it is; "
                  "anywhere else it is copied in (links followed, e.g. a Hugging Face cache snapshot).",
        widget=forms.TextInput(attrs={"spellcheck": "false", "placeholder": "/data/models/bloom-560m"}),
    )

    def save(self, *, owner: AbstractBaseUser) -> ModelArtifact:
        data = self.cleaned_data
        return services.artifact_import_folder(
            owner=owner, name=data["name"] or imports.name_from(data["folder"]), source_folder=data["folder"],
            kind=data["kind"], description=data["description"],
        )
