"""The Python client as a package (issue 12): pyproject.toml, py.typed, type
hints on the public API, and an install with pip that imports without
PYTHONPATH tricks (no daemon needed)."""

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import spacesim

SRCDIR = os.environ.get("SPACESIM_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PKGDIR = os.path.join(SRCDIR, "clients", "python")


class PackageTest(unittest.TestCase):
    def test_py_typed_marker_ships_with_the_package(self):
        self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(spacesim.__file__), "py.typed")))

    def test_pyproject_names_the_package_and_its_version(self):
        with open(os.path.join(PKGDIR, "pyproject.toml")) as f:
            text = f.read()
        self.assertIn('name = "spacesim"', text)
        self.assertIn('version = "%s"' % spacesim.__version__, text)
        self.assertIn('"py.typed"', text)

    def test_every_public_method_is_annotated(self):
        missing = []
        for cls in (spacesim.Client, spacesim.World, spacesim.Entity, spacesim.SnapshotInfo):
            for name, fn in vars(cls).items():
                if name.startswith("_") and name not in ("__init__",):
                    continue
                fn = fn.fget if isinstance(fn, property) else getattr(fn, "__func__", fn)
                if not inspect.isfunction(fn):
                    continue
                sig = inspect.signature(fn)
                if sig.return_annotation is inspect.Signature.empty:
                    missing.append("%s.%s -> ?" % (cls.__name__, name))
                for p in list(sig.parameters.values())[1:]:
                    if p.annotation is inspect.Parameter.empty:
                        missing.append("%s.%s(%s)" % (cls.__name__, name, p.name))
        self.assertEqual(missing, [])

    def test_pip_install_offline_then_import(self):
        import importlib.util
        # Looked up, not imported: importing both in one process trips setuptools' distutils shim.
        if not importlib.util.find_spec("pip") or not importlib.util.find_spec("setuptools"):
            # A missing tool fails the test (quickstart.sh installs both): a skip would read as a pass.
            self.fail("pip or setuptools missing: apt-get install python3-pip python3-setuptools (quickstart.sh does)")
        with tempfile.TemporaryDirectory() as tmp:
            # Build from a copy: pip's in-tree build leaves build/ and *.egg-info behind.
            src = os.path.join(tmp, "src")
            shutil.copytree(PKGDIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            target = os.path.join(tmp, "site")
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                                "--no-deps", "--no-index", "--target", target, src],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(os.path.isfile(os.path.join(target, "spacesim", "py.typed")))
            # A fresh interpreter whose only extra path is the install target
            # (site dirs work the same way): the installed copy is imported.
            env = dict(os.environ)
            env["PYTHONPATH"] = target
            r = subprocess.run([sys.executable, "-c", "import spacesim; print(spacesim.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.strip().startswith(target), r.stdout)


if __name__ == "__main__":
    unittest.main()
