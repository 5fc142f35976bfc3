"""Files, videos and the field's folder layouts; the lowest layer (numpy and OpenCV, no torch).

- `errors`: `InputError`, the one exception for a user's bad input;
- `checks`: argument checks shared by every layer (integers, numbers, stacks of frames);
- `files`: atomic writes, image reading and writing, uint8 conversion (one rounding rule),
  natural name order;
- `video`: frames from any container FFmpeg reads or a frame folder, streaming video writing;
- `layouts`: the field's test-folder layouts (Rain100H/L, Rain1400, Rain1200, SPA-Data, ...);
- `pairs`: SPA-Data pair lists.

May import: numpy, OpenCV and the standard library only.
"""
