"""The nginx config shipped in deploy/ is valid as the local cluster uses it."""

from __future__ import annotations

from pathlib import Path

from gateway.devtools.nginx import SHIPPED_CONFIG, Nginx, Upstream
from gateway.devtools.processes import free_port
from tests.conftest import ROOT


def test_shipped_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = Nginx(tmp_path / "nginx", free_port(),
                  [Upstream("127.0.0.1", free_port()), Upstream("127.0.0.1", 1, down=True)])
    out = nginx.test_config()
    assert "test is successful" in out
    # The very file operators install, included as it is.
    assert SHIPPED_CONFIG == ROOT / "deploy" / "nginx.conf"
    assert f"include {SHIPPED_CONFIG};" in nginx.config_path.read_text()
