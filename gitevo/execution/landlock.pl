# The Landlock floor inside bubblewrap: binds itself to a ruleset, then becomes the command.
#
# bubblewrap cannot set up its mounts under Landlock, so the floor inside it is applied by
# the first program it starts, once per command. Perl starts in about 2 ms where a Python
# that loads ctypes takes about 12, and its `syscall` reaches the three Landlock calls
# directly. gitevo.execution.landlock.perl_options works out every number below; where
# this machine has no working perl, a Python does the same (landlock.main).
#
#   perl landlock.pl FS NET SCOPED SIZE O_PATH FILE_RIGHTS [RIGHTS PATH]... -- COMMAND ARGS
#
# FS, NET, SCOPED: the ruleset's handled rights (struct landlock_ruleset_attr), SIZE its
# size for the kernel's ABI; then a rule per path (RIGHTS masked to FILE_RIGHTS where the
# path is not a folder; a missing path is skipped). bubblewrap has already set
# no_new_privs, which Landlock requires of an unprivileged process. Exit 125: the floor
# could not be applied, 127: the command could not start.
# No `use strict`, no modules: each would add to a start paid by every command.

sub refuse { print STDERR "gitevo-sandbox: cannot apply Landlock: $_[0]\n"; exit 125 }

# numbers, not strings: syscall passes a string as a pointer
my ($fs, $net, $scoped, $size, $o_path, $file_rights) = map { 0 + $_ } splice(@ARGV, 0, 6);
my $ruleset = syscall(444, pack("QQQ", $fs, $net, $scoped), $size, 0);
refuse("landlock_create_ruleset: $!") if $ruleset < 0;
while (@ARGV && $ARGV[0] ne "--") {
    my ($rights, $path) = splice(@ARGV, 0, 2);
    $rights = 0 + $rights;
    sysopen(my $handle, $path, $o_path) or next;
    $rights &= $file_rights unless -d $path;
    # struct landlock_path_beneath_attr, packed: 12 bytes
    syscall(445, $ruleset, 1, pack("QL", $rights, fileno($handle)), 0) == 0
        or refuse("landlock_add_rule $path: $!");
    close($handle);
}
shift(@ARGV);
if (!@ARGV) { print STDERR "gitevo-sandbox: no command after `--`\n"; exit 127 }
syscall(446, $ruleset, 0) == 0 or refuse("landlock_restrict_self: $!");
exec { $ARGV[0] } @ARGV;
print STDERR "gitevo-sandbox: cannot start $ARGV[0]: $!\n";
exit 127;
