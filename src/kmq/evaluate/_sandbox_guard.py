"""The sandbox's child side: run by ``python -c`` in the program's folder, never imported by kmq.

It sets the resource limits, installs the audit hook, then executes ``program.py`` as ``__main__``. The
hook only uses names bound when it was made (default arguments and closure cells), so a program that
patches ``os``, ``posixpath`` or ``builtins`` cannot loosen it. A denied action writes
``kmq-sandbox: blocked EVENT [PATH]`` on stderr and exits 86 at once; a MemoryError exits 87.
Audit hooks are no security boundary against a determined attacker (PEP 578); the namespaces, limits and
the process-group kill of :mod:`kmq.evaluate.sandbox` bound what gets past it.
"""


def _kmq_sandbox(argv):
    """Limit, guard, then run program.py; argv = [_, address space bytes, CPU s, file size bytes, open files]."""
    import posix
    import resource
    import sys

    for name, value, extra in (("RLIMIT_AS", argv[1], 0), ("RLIMIT_CPU", argv[2], 1), ("RLIMIT_FSIZE", argv[3], 0),
                               ("RLIMIT_NOFILE", argv[4], 0), ("RLIMIT_NPROC", "1", 0), ("RLIMIT_CORE", "0", 0)):
        kind = getattr(resource, name, None)
        if kind is None:
            continue
        hard = resource.getrlimit(kind)[1]
        soft = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        try:
            resource.setrlimit(kind, (soft, soft + extra if hard == resource.RLIM_INFINITY else hard))
        except (ValueError, OSError):
            pass

    root = posix.getcwd()
    sys.path[:] = [p for p in sys.path if p]
    from os.path import realpath
    readable = tuple(sorted({q for p in sys.path for q in (p, realpath(p))}))
    write_events = {
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
        "os.lchmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
        "os.setxattr": (0,), "os.removexattr": (0,), "os.chdir": (0,), "os.truncate": (0,),
        "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,),
        "shutil.copytree": (1,), "shutil.move": (0, 1), "shutil.chown": (0,), "shutil.make_archive": (0,),
        "shutil.unpack_archive": (1,), "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,),
    }
    read_events = {"os.listdir": (0,), "os.scandir": (0,), "glob.glob": (0,), "glob.glob/2": (0, 2),
                   "os.listxattr": (0,), "os.getxattr": (0,)}
    dir_fd_at = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 2, "os.rename": 2, "os.chmod": 2, "os.chown": 3,
                 "os.utime": 3, "shutil.rmtree": 1, "glob.glob/2": 3}
    denied = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
              "os.forkpty", "os.kill", "os.killpg", "os.symlink", "os.link", "os.chroot", "os.startfile", "pty.",
              "ctypes.", "cffi.", "_posixsubprocess.", "signal.pthread_kill", "sys.settrace", "sys.setprofile",
              "sys._current_frames", "gc.get_", "resource.setrlimit", "resource.prlimit", "fcntl.ioctl",
              "webbrowser.", "winreg.", "msvcrt.", "os.add_dll_directory")
    denied_imports = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess",
                                "_xxsubinterpreters", "_testcapi", "_testinternalcapi", "_xxtestfuzz"})
    write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_TRUNC

    def deny(event, args, _write=posix.write, _exit=posix._exit, _str=str, _bytes=bytes, _isinstance=isinstance):
        what = event
        if args and _isinstance(args[0], (_str, _bytes)):
            first = args[0] if _isinstance(args[0], _str) else _bytes.decode(args[0], "utf-8", "replace")
            what = event + " " + _str.__str__(first)[:200]
        _write(2, _str.encode("\n" + "kmq-sandbox: blocked " + what + "\n", "utf-8", "backslashreplace"))
        _exit(86)

    def norm(path, _root=root, _str=str, _bytes=bytes, _isinstance=isinstance):
        if _isinstance(path, _bytes):
            path = _bytes.decode(path, "utf-8", "surrogateescape")
        elif _isinstance(path, _str):
            path = _str.__str__(path)
        else:
            return None
        if not path.startswith("/"):
            path = _root + "/" + path
        parts = []
        for seg in path.split("/"):
            if seg == "..":
                if parts:
                    parts.pop()
            elif seg and seg != ".":
                parts.append(seg)
        return "/" + "/".join(parts)

    def inside(path, roots):
        for r in roots:
            if path == r or path.startswith(r + "/"):
                return True
        return False

    def check_open(event, args, _int=int, _isinstance=isinstance, _stat=posix.stat, _isdir=0o040000,
                   _fmt=0o170000, _root=(root,), _readable=readable):
        path, flags = args[0], args[2]
        if _isinstance(path, _int):
            return
        p = norm(path)
        if p is None:
            deny(event, args)
        if inside(p, _root):
            return
        if not _isinstance(flags, _int) or flags & write_flags or not inside(p, _readable):
            deny(event, args)
        try:
            mode = _stat(p).st_mode
        except OSError:
            return
        if mode & _fmt == _isdir:  # a directory fd could anchor dir_fd writes outside the folder
            deny(event, args)

    def hook(event, args, _int=int, _str=str, _isinstance=isinstance, _len=len, _root=(root,), _readable=readable,
             _write_get=write_events.get, _read_get=read_events.get, _dirfd_get=dir_fd_at.get,
             _denied=denied, _denied_imports=denied_imports):
        if event.startswith(_denied):
            deny(event, args)
        elif event == "import":
            if _isinstance(args[0], _str) and args[0].partition(".")[0] in _denied_imports:
                deny(event, args)
        elif event == "open":
            check_open(event, args)
        else:
            write = _write_get(event)
            where = write if write is not None else _read_get(event)
            if where is None:
                return
            at = _dirfd_get(event)
            if at is not None and at < _len(args) and args[at] is not None and args[at] != -1:
                deny(event, args)
            for i in where:
                if i >= _len(args) or args[i] is None:
                    continue
                if _isinstance(args[i], _int):
                    if write is None or event == "os.truncate":
                        continue
                    deny(event, args)
                p = norm(args[i])
                if p is None or not (inside(p, _root) or (write is None and inside(p, _readable))):
                    deny(event, args)

    stub = type(sys)("_posixsubprocess")
    stub.fork_exec = lambda *a, _deny=deny: _deny("_posixsubprocess.fork_exec", ())
    sys.modules["_posixsubprocess"] = stub
    sys.addaudithook(hook)
    path = root + "/program.py"
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    main = sys.modules["__main__"].__dict__
    main.pop("_kmq_sandbox", None)
    main["__file__"] = path
    try:
        exec(code, main)
    except MemoryError:
        posix.write(2, b"\nkmq-sandbox: memory\n")
        posix._exit(87)



if __name__ == "__main__":
    _kmq_sandbox(__import__("sys").argv)
