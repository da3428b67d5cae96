"""fsu: fs-utils for disk images -- ls, cat, put, get, makefs ... on an image file, with no
root and no mount, through a rump kernel's own file system drivers.

Modules: ``main`` (command line, dispatch), ``commands`` (registry), ``cmd_list`` (ls, tree),
``cmd_inspect`` (cat, stat, du, df, info), ``cmd_find``, ``cmd_diff``, ``cmd_modify``
(mkdir, rmdir, rm, mv, ln, chmod, chown, chgrp, touch, write), ``cmd_copy`` (put, get, cp),
``session`` (boot, mount, chroot, halt), ``batch`` (many commands, one boot), ``progress``,
``modes`` (chmod modes, touch dates), ``makefs`` + ``mtree`` + ``sizing`` (image building),
``entry`` (fsu_NAME console scripts).
"""
