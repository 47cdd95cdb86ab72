import sys

from studio.startup import keep_working_folder_off_path

# Before anything else is imported: no file of the folder we were started in may stand in
# for one of our modules.
keep_working_folder_off_path()

from studio.cli import main  # noqa: E402

sys.exit(main())
