"""What every local service relies on: a missing program is named with how to install it."""

from __future__ import annotations

import pytest

from gateway.devtools.processes import LocalServiceError, find_program


def test_missing_program_names_its_package_and_the_setup_script() -> None:
    with pytest.raises(LocalServiceError) as exc:
        find_program("no-such-program-here", "some-package")
    assert "scripts/os-packages.sh" in str(exc.value)
    assert "apt-get install some-package" in str(exc.value)
