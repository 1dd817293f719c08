from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.datasets import selectors
from webapp.datasets.formats import FORMATS, KINDS
from webapp.datasets.formats import DEFAULT_CATEGORY_MAP
from webapp.datasets.models import DatasetKind, DatasetStatus
from webapp.registry.selectors import artifact_list


@require_GET
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = selectors.dataset_list(user=request.user)
    return render(request, "datasets/dataset_list.html", {"datasets": datasets})


@require_GET
def dataset_upload(request: HttpRequest) -> HttpResponse:
    formats = [{"name": f.name, "kind": f.kind, "label": f.label} for f in FORMATS]
    return render(request, "datasets/upload.html", {
        "kinds": DatasetKind.choices, "formats": formats, "models": artifact_list(user=request.user),
        "category_map": json.dumps(DEFAULT_CATEGORY_MAP, ensure_ascii=False),
    })


@require_GET
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    histogram = dataset.stats.get("token_length", {}).get("histogram") or dataset.stats.get("char_length", {}).get("histogram") or []
    peak = max((bin["count"] for bin in histogram), default=0) or 1
    bars = [{**bin, "percent": round(100 * bin["count"] / peak, 1)} for bin in histogram]
    return render(request, "datasets/dataset_detail.html", {
        "dataset": dataset, "bars": bars, "terminal": dataset.is_terminal,
        "sample": [json.dumps(row, ensure_ascii=False) for row in dataset.stats.get("sample", [])],
        "length_unit": "tokens" if dataset.stats.get("token_length") else "characters",
    })


@require_GET
def mixture_list(request: HttpRequest) -> HttpResponse:
    return render(request, "datasets/mixture_list.html", {"mixtures": selectors.mixture_list(user=request.user)})


@require_GET
def mixture_new(request: HttpRequest) -> HttpResponse:
    ready = selectors.dataset_list(user=request.user).filter(status=DatasetStatus.READY)
    return render(request, "datasets/mixture_new.html", {"datasets": ready, "kinds": KINDS})
