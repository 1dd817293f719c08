from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_smoke import log_in
from tests.support import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_upload_a_file_and_see_its_stats(page, make_user, tmp_path: Path) -> None:
    make_user("judy", password="pw-Secret-123")
    rows = [{"instruction": f"商品{i}怎么样?", "input": "", "output": "很好。" * (i % 5 + 1)} for i in range(300)]
    rows.append({"instruction": "坏行"})
    data = tmp_path / "ecom_sft.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    with celery_worker(log_dir=tmp_path):
        log_in(page, "judy", "pw-Secret-123", next_url="/datasets/upload/")
        page.select_option("#id_kind", "instruction")
        page.set_input_files("#id_file", str(data))
        expect(page.locator("#preview-summary")).to_contain_text("Alpaca")
        expect(page.locator("#preview-rows")).to_contain_text('"content":"商品0怎么样?"')
        expect(page.locator("#id_name")).to_have_value("ecom_sft")
        page.get_by_role("button", name="Upload").click()
        expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
        expect(page.locator("#status")).to_have_text("Ready", timeout=60_000)
    expect(page.get_by_text("exact duplicates")).to_be_visible()
    expect(page.locator(".bar-row")).to_have_count(20)
    expect(page.locator("#rows-range")).to_have_text("rows 1–20 of 300")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#rows-range")).to_have_text("rows 21–40 of 300")
    expect(page.get_by_role("cell", name="missing field(s) output of format alpaca")).to_be_visible()
