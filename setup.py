"""Packaging for vmbuilder-lxc.

The repository keeps plugins/, templates/ and hooks/ at the top level (the design card's layout);
package_dir maps them into the vmbuilder_lxc package so an installed copy finds them without a
source checkout.
"""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "vmbuilder_lxc" / "__init__.py").read_text(), re.M).group(1)  # type: ignore[union-attr]

setup(
    name="vmbuilder-lxc",
    version=VERSION,
    description="VMBuilder-compatible builder of container-safe Ubuntu root filesystems for LXC and libvirt-lxc",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.11",
    packages=[
        "vmbuilder_lxc",
        "vmbuilder_lxc.domaincheck",
        "vmbuilder_lxc.exports",
        "vmbuilder_lxc.manpage",
        "vmbuilder_lxc.plugins",
        "vmbuilder_lxc.publish",
        "vmbuilder_lxc.source",
        "vmbuilder_lxc.templates",
        "vmbuilder_lxc.hooks",
    ],
    package_dir={
        "vmbuilder_lxc": "vmbuilder_lxc",
        "vmbuilder_lxc.plugins": "plugins",
        "vmbuilder_lxc.templates": "templates",
        "vmbuilder_lxc.hooks": "hooks",
    },
    package_data={
        "vmbuilder_lxc": ["py.typed"],
        "vmbuilder_lxc.templates": ["*/*.j2", "*/*/*.j2"],
        "vmbuilder_lxc.hooks": ["*.sh"],
    },
    include_package_data=False,
    install_requires=["jinja2>=3.0", "sh>=1.14"],
    extras_require={"test": ["pytest", "pyfakefs", "ruff", "mypy", "pyyaml", "types-PyYAML"]},
    entry_points={
        "console_scripts": [
            "vmbuilder = vmbuilder_lxc.cli:main",
            "vmbuilder-fetch-keyring = vmbuilder_lxc.keyring:fetch_main",
        ],
        "vmbuilder_lxc.plugins": [
            "lxc = vmbuilder_lxc.plugins.lxc:LXC",
            "ubuntu = vmbuilder_lxc.plugins.ubuntu:Ubuntu",
            "debian = vmbuilder_lxc.plugins.debian:Debian",
            "postinst = vmbuilder_lxc.plugins.postinst:PostInst",
            "libvirt = vmbuilder_lxc.plugins.libvirt:Libvirt",
            "export = vmbuilder_lxc.plugins.export:Export",
            "doctor = vmbuilder_lxc.plugins.doctor:Doctor",
            "cache = vmbuilder_lxc.plugins.cache:Cache",
            "publish = vmbuilder_lxc.plugins.publish:Publish",
        ],
    },
    classifiers=[
        "Environment :: Console",
        "Intended Audience :: System Administrators",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Installation/Setup",
    ],
)
