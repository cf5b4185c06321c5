"""The ground floor: what every room shares and none owns (../shared/DESIGN.md).

- ``errors``: ``UserError`` (``user_error = True``: an entry point reports it as one line, exit 2),
  ``check_number`` and ``check_choice``, the one range check and the one choice check;
- ``files``: atomic writes on the destination's own file system, the run-dir lock, no write through a link;
- ``hardware``: what this machine's CPU and GPUs can do (flags, usable cores);
- ``formatting``: the one number formatter (``human``: 61.7 k, 40.55 M) and the one markdown-table writer.
- ``figures``: the report figures (confusion matrix, filters, feature maps, Grad-CAM), matplotlib drawn
  lazily and without a backend switch, and their text versions.

It imports the standard library only (torch where a helper needs it, inside the function), so that
any room, and an entry point before torch is imported, may use it.
"""
