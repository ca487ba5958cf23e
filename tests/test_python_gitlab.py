"""python-gitlab as a real client of a `gateway serve` process: generic package upload/download."""

from __future__ import annotations

import hashlib
import io
import os

import gitlab

from tests.conftest import GatewayProcess, World


def client_for(gateway: GatewayProcess, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(gateway.url, private_token=token, timeout=30)


def test_python_gitlab_uploads_and_downloads_a_generic_package(
    gateway: GatewayProcess, world: World
) -> None:
    gl = client_for(gateway, world.tokens["developer"])
    project = gl.projects.get(world.project_id, lazy=True)
    body = os.urandom(300_000)
    pkg = project.generic_packages.upload(
        package_name="tool", package_version="2.0.0", file_name="tool.tgz", data=body
    )
    assert pkg.message == "201 Created"
    assert project.generic_packages.download("tool", "2.0.0", "tool.tgz") == body


def test_python_gitlab_select_package_file_reports_name_and_size(
    gateway: GatewayProcess, world: World
) -> None:
    gl = client_for(gateway, world.tokens["developer"])
    project = gl.projects.get("acme/tools", lazy=True)
    body = b"0123456789"
    pkg = project.generic_packages.upload(
        package_name="tool", package_version="2.0.0", file_name="sub/dir/a.txt",
        data=io.BytesIO(body), select="package_file",
    )
    assert pkg.file_name == "sub%2Fdir%2Fa.txt"
    assert pkg.size == 10
    assert pkg.file_sha256 == hashlib.sha256(body).hexdigest()


def test_python_gitlab_upload_refused_for_a_reporter(gateway: GatewayProcess,
                                                     world: World) -> None:
    gl = client_for(gateway, world.tokens["reporter"])
    project = gl.projects.get(world.project_id, lazy=True)
    try:
        project.generic_packages.upload(
            package_name="tool", package_version="1", file_name="x", data=b"x"
        )
    except gitlab.GitlabUploadError as err:
        assert err.response_code == 403
    else:  # pragma: no cover
        raise AssertionError("upload was not refused")
