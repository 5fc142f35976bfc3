"""Paper §3: from rain videos to rain/clean pairs (no torch).

- `background`: the clean image of a static stretch (Eqs. 2-4) and its reliability map;
- `alignment`: camera motion measured through the rain, warping;
- `clip_estimate`: a whole clip: stable periods, one estimate per period, pair checks;
- `selection`: the paper's rules for N; `quality`: the no-reference quality score;
- `review`, `review_widget`, `review_images`: the human review and its notebook widget;
- `export`: accepted scenes to SPA-Data style pairs (``spanet build-dataset``);
- `clean_images`: one clip's clean image per stable period (``spanet estimate-background``).

May import: `spanetlib.io`.
"""
