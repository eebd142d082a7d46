"""The synthetic MIND world: a documented generative story written out as real MIND files.

MIND cannot be downloaded everywhere and tests must not need it, so this package writes
folders `train/`, `dev/`, `test/` in MIND's own format (news.tsv with entity JSON,
behaviors.tsv, entity_embedding.vec, relation_embedding.vec; test unlabeled as in MIND-large)
and keeps the truth beside them:

    click_probability.tsv   <impression id>\\t<p1 p2 ... pn>   the true click probability of
                            every candidate, in the impression's candidate order (all splits)
    truth.txt               <impression id> [l1,l2,...,ln]   the clicks of the unlabeled test
                            split, in the leaderboard's truth format
    world.json              the config, seed and counts; written last (the folder appears only
                            when everything is written, see `generate_world`)

The story (docs/synthetic_world.md has it at length, with every knob):

1. Topics. Categories (MIND's names) with subcategories; each subcategory has a unit
   direction in a latent space of `latent_dim` dimensions, near its category's direction.
2. Words. Topical words belong to a subcategory and carry a latent vector near its
   direction; common words (real function words, then made-up fillers, Zipf-frequent) carry
   none; *modifiers* (negations "not", "never", ...; intensifiers "very", ...) carry none
   themselves but change the first topical word that follows them within `modifier_reach`
   positions: a negation multiplies its vector by `negation_factor` (-1 flips it), an
   intensifier by `intensifier_factor`. The same words in another order mean something
   else, and what a modifier does depends on the word it reaches.
3. Entities. Each subcategory owns named entities (WikidataIds `Q...`) with a latent vector
   near its direction and a 100-d embedding that is a fixed random projection of it (so
   entity embeddings correlate with topics); a few have no embedding row, as in MIND.
4. News. A category (Zipf-popular), a subcategory, a title (~11.5 words: topical words,
   fillers, modifiers, entity mentions in random order), an abstract (~40 words, same
   subcategory, no modifiers), a publication time, a lifetime (it is shown only while
   alive), a popularity. Its latent vector is a function of its title only: the modified
   topical-word vectors plus the title entities' vectors, normalised, plus a little hidden
   noise (`news_hidden_noise`) that no text model can see.
5. Users. A mixture of interests (subcategories, Dirichlet weights) plus a personal taste
   vector, a drift direction (taste moves by `drift_per_day` per day), a click propensity,
   an activity level (impressions are shared out by it). A history of clicks from the
   `history_days` before training starts, heavy-tailed in length (some empty), identical in
   every split (MIND builds histories from the weeks before its impression logs).
6. Impressions. A time (days of the split, more by day than by night), candidates sampled
   from the news alive at that hour with popularity skew, and for each candidate
       p = sigmoid(click_bias + user_bias + taste_scale * taste(t) . latent
                   + popularity_weight * log_popularity - recency_weight * age_in_days),
   clicks ~ Bernoulli(p); an impression without a click gets one, drawn in proportion to p
   (the stored p stays the truth). `click_bias` is calibrated so labeled impressions average
   `clicks_per_impression` clicks.

Train covers `train_days` from `start_date` (MIND-small: 11/09-11/14/2019), dev the next
`dev_days`, test the next `test_days`. Most dev users never appear in train and many dev news
are published after train ends (cold start), as in MIND.

Everything is vectorised numpy and written in blocks of a fixed number of impressions, each
block with its own random stream derived from (seed, split, block), so the output is
byte-identical for a seed whatever the machine.

Command line: `python -m newsrec.data.synthetic --preset synthetic --seed 0 --out DIR`.

The package, one idea a module:

    config.py       WorldConfig (every knob) and PRESETS
    streams.py      the random streams and sampling tools (alias tables, Zipf, made-up words)
    world.py        story steps 1-3 and 5 (topics, words, entities, users, histories),
                    and `build_world`, which runs every step
    news.py         story step 4 (titles, abstracts, entity mentions, the news latent vector)
    impressions.py  story step 6 (candidates, click probabilities, clicks, calibration)
    writer.py       the MIND files, written all or nothing (`generate_world`)
    source.py       `SyntheticSource`, the data source the datamodule uses (cached worlds)
    cli.py          the command line

The truth files are read back by `newsrec.data.mind.load_click_probabilities`.
"""

from __future__ import annotations

from newsrec.data.mind import load_click_probabilities
from newsrec.data.synthetic.cli import main
from newsrec.data.synthetic.config import GENERATOR_VERSION, PRESETS, WorldConfig
from newsrec.data.synthetic.source import SyntheticSource
from newsrec.data.synthetic.writer import generate_world, is_complete_world

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "SyntheticSource",
    "WorldConfig",
    "generate_world",
    "is_complete_world",
    "load_click_probabilities",
    "main",
]
