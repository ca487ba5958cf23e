"""Ready-to-copy lines that download one file: curl, wget, python-gitlab, a GitLab CI job.

Filled in with the real URL (``GATEWAY_EXTERNAL_URL`` or the request's), never with a token:
the placeholder is GitLab's ``<your_access_token>``, and CI reads a masked variable.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.naming import encode_uri_component

TOKEN_PLACEHOLDER = "<your_access_token>"
CI_VARIABLE = "PACKGATE_TOKEN"


@dataclass(frozen=True, slots=True)
class Command:
    key: str
    title: str
    text: str
    note: str = ""


def download_url(base: str, project_id: int, name: str, version: str, file_name: str) -> str:
    """The generic package URL of a stored file name (``dir%2Ffile`` was uploaded as
    ``…/dir/file``, and is fetched by that path again)."""
    path = "/".join(encode_uri_component(part) for part in unquote(file_name).split("/"))
    return (f"{base}/api/v4/projects/{project_id}/packages/generic/"
            f"{encode_uri_component(name)}/{encode_uri_component(version)}/{path}")


def for_file(base: str, project_id: int, name: str, version: str, file_name: str
             ) -> list[Command]:
    url = download_url(base, project_id, name, version, file_name)
    stored_path = unquote(file_name)
    output = shlex.quote(stored_path.rsplit("/", 1)[-1])
    quoted_url = shlex.quote(url)
    curl = (f'curl --fail-with-body --location --header "PRIVATE-TOKEN: {TOKEN_PLACEHOLDER}" '
            f"--output {output} {quoted_url}")
    wget = (f'wget --header="PRIVATE-TOKEN: {TOKEN_PLACEHOLDER}" '
            f"--output-document={output} {quoted_url}")
    python = "\n".join([
        "import gitlab",
        "",
        f'gl = gitlab.Gitlab({json.dumps(base)}, private_token="{TOKEN_PLACEHOLDER}")',
        f"project = gl.projects.get({project_id}, lazy=True)",
        f"with open({json.dumps(stored_path.rsplit('/', 1)[-1])}, \"wb\") as f:",
        "    project.generic_packages.download(",
        f"        package_name={json.dumps(name)}, package_version={json.dumps(version)},",
        f"        file_name={json.dumps(stored_path)}, streamed=True, action=f.write,",
        "    )",
    ])
    ci_curl = (f'curl --fail-with-body --location --header "Authorization: Bearer '
               f'${{{CI_VARIABLE}}}" --output {output} {quoted_url}')
    # A single-quoted YAML scalar: the command holds ": ", which a plain scalar may not.
    ci = "\n".join([
        f"download-{_job_name(name)}:",
        "  script:",
        "    - '" + ci_curl.replace("'", "''") + "'",
    ])
    return [
        Command("curl", "curl", curl),
        Command("wget", "wget", wget),
        Command("python", "python-gitlab", python),
        Command("ci", "GitLab CI", ci,
                f"{CI_VARIABLE}: a masked CI/CD variable holding a deploy token, job token or "
                "access token that may read this project's packages."),
    ]


def _job_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "package"
