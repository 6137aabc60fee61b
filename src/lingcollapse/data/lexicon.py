"""Word lists of the embedded corpus: the simple vocabulary of a children's story.

Each list is ordered roughly from common to rare; :mod:`.stories` draws from it with
Zipf weights by position, so the corpus has the heavy-tailed token frequencies of real
language (paper Fig. 4) rather than a flat one. Names include all of the paper's
Table 5; :data:`HOMONYMS` holds every word of Table 4 in at least two senses.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# (name, pronoun) — TinyStories' favourites first, then every first name of Table 5.
NAMES = tuple(
    tuple(entry.split(":"))
    for entry in (
        "Lily:she Tim:he Ben:he Sue:she Tom:he Mia:she Max:he Sam:he Lucy:she Anna:she "
        "Amy:she Jack:he Timmy:he Sara:she Kate:she Bob:he Emma:she Lila:she Jake:he Zoe:she "
        "Donald:he John:he David:he Paul:he Michael:he James:he William:he Jim:he Harry:he "
        "Robert:he Steve:he Daniel:he George:he Andrew:he Ryan:he Thomas:he Kevin:he Mary:she "
        "Brian:he Martin:he Eric:he Matthew:he Charles:he Sarah:she Luke:he Henry:he "
        "Anthony:he Kelly:she Robin:she Kyle:he Jennifer:she Elizabeth:she Laura:she Alice:she "
        "Jessica:she Jacob:he Ella:she Leo:he Rosie:she Finn:he Ruby:she Ollie:he Molly:she "
        "Jenny:she Nina:she Oscar:he Grace:she Noah:he Chloe:she Owen:he Hannah:she Adam:he"
    ).split()
)
TABLE5_NAMES = _words(
    "Donald John David Paul Michael James Tim William Jim Harry Robert Steve Daniel George "
    "Andrew Ryan Thomas Kevin Mary Brian Martin Eric Matthew Charles Sarah Luke Anna Henry "
    "Anthony Kelly Robin Kyle Jennifer Elizabeth Laura Alice Jessica Jacob"
)
PET_NAMES = _words(
    "Spot Max Buddy Fluffy Whiskers Coco Daisy Rex Bella Sunny Pip Biscuit Muffin Ziggy "
    "Peanut Snowy Bubbles Patch Ginger Pepper Shadow Button Noodle Tiger Rocky Lucky"
)
KIDS = {  # by pronoun, so "a girl named Tim" never happens
    "she": _words("girl kid child princess daughter"),
    "he": _words("boy kid child prince son"),
}
FAMILY = _words(
    "mom dad mommy daddy grandma grandpa sister brother aunt uncle teacher friend neighbor "
    "farmer baker doctor king queen pilot sailor fisherman"
)
ANIMALS = _words(
    "dog cat bird bunny bear fish frog duck puppy kitten mouse lion owl horse cow pig "
    "monkey elephant turtle squirrel fox rabbit sheep goat chicken bee butterfly ant "
    "snake tiger giraffe zebra deer wolf dolphin whale shark crab penguin parrot swan "
    "goose hen rooster lamb pony donkey kangaroo koala panda hippo camel seal otter "
    "beaver hedgehog raccoon spider ladybug worm snail dragon unicorn dinosaur bug "
    "robin crow eagle hawk moose mole badger lizard octopus jellyfish seagull "
    "flamingo peacock chipmunk walrus gorilla cheetah leopard rhino bat"
)
TOYS = _words(
    "ball toy doll kite car truck train block teddy book box hat balloon boat robot "
    "puzzle drum crayon bike swing slide blanket pillow cup spoon key bell bag shoe "
    "sock coat scarf shirt dress button basket bucket shovel rope stick paper pencil "
    "brush paint picture card letter map clock lamp chair table bed door window rug "
    "jar bottle plate fork knife cake candle gift crown wand sword shield whistle "
    "flag tent ladder wagon sled mirror comb towel soap bowl ring umbrella "
    "backpack necklace bracelet glove mitten boot sandal jacket sweater marble "
    "yoyo rocket spaceship plane helicopter bus tractor scooter skateboard guitar "
    "piano flute trumpet violin xylophone camera telescope compass lantern "
    "flashlight hammer nail glue tape scissors ribbon string bead sticker stamp "
    "envelope note diary notebook chalk marker clay sandcastle snowman fort "
    "treasure chest coin jewel pearl diamond feather pinwheel bubble wand"
)
FOOD = _words(
    "apple cake cookie bread soup milk juice candy pie banana carrot cheese egg "
    "honey sandwich pizza cereal orange grape berry cherry pear peach lemon melon "
    "corn pea bean potato tomato muffin pancake jam butter rice noodle icecream "
    "popcorn cupcake lollipop nut seed salad chocolate sugar date pumpkin "
    "strawberry blueberry watermelon pineapple coconut plum kiwi mango broccoli "
    "spinach cucumber onion pepper mushroom sausage bacon toast waffle pudding "
    "yogurt smoothie lemonade tea cocoa pretzel cracker donut biscuit"
)
PLACES = _words(
    "park garden house school forest beach pond farm yard room kitchen castle town "
    "zoo store shop lake river hill field cave jungle village city street road "
    "playground library museum barn nest ocean island mountain valley meadow bakery "
    "market station bridge tower tree hospital church desert pool attic "
    "basement porch backyard orchard harbor lighthouse circus theater palace "
    "swamp cottage den tunnel classroom office airport island"
)
NATURE = _words(
    "tree flower sun moon star sky cloud rain snow wind grass leaf rock stone sand "
    "water puddle rainbow shell feather mud log branch bush hole nest storm fire "
    "seed root petal pebble wave acorn pinecone vine moss thorn icicle frost "
    "fog thunder lightning sunset sunrise breeze dew wave"
)
COLORS = _words("red blue green yellow pink purple orange white black brown gold silver gray")
ADJECTIVES = _words(
    "big little small happy sad good nice pretty kind funny shiny soft new old "
    "beautiful scary tiny huge tall long short fast slow brave shy loud quiet warm "
    "cold hot wet dry clean dirty bright dark sweet sour yummy smart silly lazy busy "
    "strong weak gentle friendly grumpy sleepy hungry thirsty tired curious proud "
    "careful messy fluffy fuzzy round square sharp smooth rough heavy empty full "
    "special magic secret strange quick noisy calm wild tame lucky fancy plain "
    "sparkly colorful rainy sunny windy snowy cozy sticky spicy crunchy juicy "
    "delicious lovely cute ugly giant wise clever helpful polite rude mean honest "
    "thankful excited worried nervous angry jealous lonely cheerful playful gentle "
    "famous rare precious broken lost hidden golden wooden fresh rotten stinky "
    "bumpy squishy slimy prickly fuzzy glittery striped spotted dotted shaggy "
    "chubby skinny wobbly dizzy jolly merry grand mighty humble generous "
    "greedy selfish caring loving fearless timid bored amazed puzzled "
    "splendid marvelous wonderful terrible horrible awful perfect"
)
FEELINGS = _words(
    "happy sad scared excited angry surprised proud worried sorry glad upset "
    "curious nervous calm lonely thankful shy brave tired grumpy"
)
VERBS_INTRANSITIVE = (
    ("play", "played"),
    ("run", "ran"),
    ("jump", "jumped"),
    ("dance", "danced"),
    ("sing", "sang"),
    ("swim", "swam"),
    ("laugh", "laughed"),
    ("smile", "smiled"),
    ("climb", "climbed"),
    ("fly", "flew"),
    ("hop", "hopped"),
    ("skip", "skipped"),
    ("sleep", "slept"),
    ("rest", "rested"),
    ("explore", "explored"),
    ("walk", "walked"),
    ("draw", "drew"),
    ("read", "read"),
    ("cook", "cooked"),
    ("bake", "baked"),
    ("paint", "painted"),
    ("splash", "splashed"),
    ("roll", "rolled"),
    ("spin", "spun"),
    ("giggle", "giggled"),
    ("shout", "shouted"),
    ("whisper", "whispered"),
    ("cry", "cried"),
    ("hide", "hid"),
    ("race", "raced"),
    ("wander", "wandered"),
    ("dream", "dreamed"),
    ("listen", "listened"),
    ("learn", "learned"),
    ("share", "shared"),
    ("help", "helped"),
    ("wait", "waited"),
    ("clap", "clapped"),
    ("crawl", "crawled"),
    ("march", "marched"),
    ("slide", "slid"),
    ("float", "floated"),
    ("bounce", "bounced"),
    ("dig", "dug"),
    ("garden", "gardened"),
    ("skate", "skated"),
    ("fish", "fished"),
    ("camp", "camped"),
    ("sail", "sailed"),
    ("twirl", "twirled"),
    ("hum", "hummed"),
)
VERBS_TRANSITIVE = (
    ("find", "found"),
    ("see", "saw"),
    ("take", "took"),
    ("give", "gave"),
    ("hold", "held"),
    ("carry", "carried"),
    ("make", "made"),
    ("build", "built"),
    ("fix", "fixed"),
    ("throw", "threw"),
    ("catch", "caught"),
    ("kick", "kicked"),
    ("push", "pushed"),
    ("pull", "pulled"),
    ("hug", "hugged"),
    ("kiss", "kissed"),
    ("touch", "touched"),
    ("pick", "picked"),
    ("open", "opened"),
    ("wash", "washed"),
    ("clean", "cleaned"),
    ("eat", "ate"),
    ("drink", "drank"),
    ("buy", "bought"),
    ("bring", "brought"),
    ("show", "showed"),
    ("hide", "hid"),
    ("lose", "lost"),
    ("keep", "kept"),
    ("share", "shared"),
    ("drop", "dropped"),
    ("break", "broke"),
    ("paint", "painted"),
    ("draw", "drew"),
    ("chase", "chased"),
    ("feed", "fed"),
    ("save", "saved"),
    ("follow", "followed"),
    ("smell", "smelled"),
    ("taste", "tasted"),
    ("fold", "folded"),
    ("wrap", "wrapped"),
    ("fill", "filled"),
    ("shake", "shook"),
    ("squeeze", "squeezed"),
    ("tickle", "tickled"),
    ("pet", "petted"),
    ("watch", "watched"),
    ("grab", "grabbed"),
    ("lift", "lifted"),
    ("sew", "sewed"),
    ("stack", "stacked"),
    ("borrow", "borrowed"),
    ("decorate", "decorated"),
    ("plant", "planted"),
)
ADVERBS = _words(
    "quickly slowly happily sadly carefully quietly loudly gently softly proudly "
    "bravely kindly patiently eagerly busily calmly cheerfully nervously slowly "
    "politely neatly boldly sweetly wisely merrily lazily"
)
NUMBERS = _words("two three four five six seven eight nine ten many some few")
TIMES = _words("morning afternoon evening night day week summer winter autumn weekend birthday")
PREPOSITIONS = _words("in on under behind near beside inside above by")
MORALS = (
    "sharing is caring",
    "it is good to be kind to others",
    "friends help each other",
    "being brave is important",
    "it is okay to ask for help",
    "you should always tell the truth",
    "being patient is a good thing",
    "it is important to listen to your mom and dad",
    "hard work makes dreams come true",
    "it is better to play together",
    "saying sorry can fix many things",
    "everyone is special in their own way",
    "you should be careful with things you love",
    "it is good to try new things",
    "being polite makes people happy",
    "a little help goes a long way",
    "you should not be greedy",
    "it is fun to make new friends",
    "you should clean up after you play",
    "being thankful makes the heart warm",
)

# Every homonym of the paper's Table 4, each with sentences in two or more senses.
# "{n}" is a name, "{p}" a pronoun (he/she), "{q}" a possessive (his/her).
HOMONYMS = {
    "row": (
        "{n} and the other kids sat in a row on the bench.",
        "{n} and {q} dad took a boat out to row on the lake.",
        "{n} planted the seeds in a long row in the garden.",
    ),
    "ring": (
        "{n} found a shiny ring in the sand.",
        "{n} heard the bell ring at school.",
        "The kids held hands and made a big ring on the grass.",
    ),
    "light": (
        "{n} turned on the light because the room was dark.",
        "The box was so light that {n} could carry it with one hand.",
        "{n} saw a little light far away in the forest.",
    ),
    "well": (
        "{n} looked down into the old well and saw water.",
        "{n} did very well at the race and felt proud.",
        '"Well, let us try again," said {n}.',
    ),
    "date": (
        "{n} ate a sweet brown date from the bowl.",
        "{n} wrote the date at the top of the paper.",
        "Mom told {n} the date of the big party.",
    ),
    "bat": (
        "A small bat flew out of the dark cave.",
        "{n} hit the ball with a big wooden bat.",
        "{n} saw a bat hanging upside down from a branch.",
    ),
    "left": (
        "{n} turned left at the big tree.",
        "{n} left the house early in the morning.",
        "There was only one cookie left on the plate.",
    ),
    "match": (
        "Dad lit a match to start the fire.",
        "{n} and {q} team won the soccer match.",
        "{n} looked for a sock to match the red one.",
    ),
    "spring": (
        "In the spring, the flowers began to grow.",
        "The toy had a spring inside that made it jump.",
        "{n} drank cold water from a spring in the hills.",
    ),
    "bank": (
        "{n} put {q} coins in the bank to save them.",
        "{n} sat on the bank of the river and watched the fish.",
        "Mom went to the bank to get some money.",
    ),
    "wave": (
        "A big wave splashed on the beach.",
        "{n} gave a happy wave to {q} friend.",
        "{n} rode the wave on a little board.",
    ),
    "close": (
        "{n} asked {q} brother to close the door.",
        "The park was close to {q} house.",
        "{n} and {q} best friend were very close.",
    ),
    "fair": (
        "{n} went to the fair and rode on a big wheel.",
        '"That is not fair!" said {n}.',
        "The king was fair and kind to everyone.",
    ),
    "lead": (
        "{n} held the lead and walked the dog to the park.",
        "{n} wanted to lead the group up the hill.",
        "The old pipe was made of heavy lead.",
    ),
    "bowl": (
        "{n} ate a big bowl of soup.",
        "{n} tried to bowl the ball down the lane.",
        "The cat drank milk from a little bowl.",
    ),
}
