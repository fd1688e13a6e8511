"""Chapter 03: word lists and small fact tables for the corpus generator, all written for this project."""
from __future__ import annotations

# (name, subject pronoun, object pronoun, possessive)
CHARACTERS = [
    ("Mia", "she", "her", "her"), ("Tom", "he", "him", "his"), ("Ada", "she", "her", "her"),
    ("Ben", "he", "him", "his"), ("Lily", "she", "her", "her"), ("Sam", "he", "him", "his"),
    ("Nora", "she", "her", "her"), ("Leo", "he", "him", "his"), ("Ivy", "she", "her", "her"),
    ("Max", "he", "him", "his"), ("Zoe", "she", "her", "her"), ("Omar", "he", "him", "his"),
    ("Lena", "she", "her", "her"), ("Kai", "he", "him", "his"), ("Rosa", "she", "her", "her"),
    ("Finn", "he", "him", "his"), ("Mei", "she", "her", "her"), ("Ravi", "he", "him", "his"),
    ("Anna", "she", "her", "her"), ("Jack", "he", "him", "his"),
]

# animal: (legs, sound, food, home)
ANIMALS = {
    "cat": (4, "meows", "fish", "a warm house"),
    "dog": (4, "barks", "meat", "a kennel"),
    "cow": (4, "moos", "grass", "a barn"),
    "horse": (4, "neighs", "hay", "a stable"),
    "sheep": (4, "bleats", "grass", "a field"),
    "duck": (2, "quacks", "seeds", "a pond"),
    "owl": (2, "hoots", "mice", "a hollow tree"),
    "hen": (2, "clucks", "corn", "a coop"),
    "frog": (4, "croaks", "flies", "a pond"),
    "bee": (6, "buzzes", "nectar", "a hive"),
    "fox": (4, "yelps", "berries and mice", "a den"),
    "rabbit": (4, "squeaks", "carrots", "a burrow"),
    "mouse": (4, "squeaks", "cheese", "a small hole"),
    "lion": (4, "roars", "meat", "the grassland"),
    "bird": (2, "sings", "seeds", "a nest"),
    "spider": (8, "is silent", "insects", "a web"),
    "bear": (4, "growls", "honey and fish", "a cave"),
    "goat": (4, "bleats", "leaves", "a hill"),
}

PLACES = ["garden", "forest", "river", "market", "school", "kitchen", "hill", "beach", "library",
          "village", "park", "farm", "lake", "city", "field", "harbor", "bakery", "museum",
          "station", "mountain"]
OBJECTS = ["ball", "kite", "book", "box", "cup", "key", "hat", "apple", "map", "lamp", "shell",
           "stone", "drum", "bell", "boat", "coin", "letter", "basket", "flower", "ribbon",
           "pencil", "clock", "blanket", "feather"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "brown", "pink",
          "gray", "golden"]
SIZES = ["big", "small", "tiny", "huge", "long", "short", "old", "new", "shiny", "soft"]
TRAITS = ["kind", "brave", "curious", "quiet", "clever", "shy", "happy", "busy", "gentle",
          "funny", "careful", "sleepy"]
WORRIES = ["sad", "worried", "tired", "scared", "upset", "confused"]
JOYS = ["happy", "proud", "grateful", "calm", "excited", "glad"]
TIMES = ["morning", "afternoon", "evening", "night", "spring day", "summer day", "rainy day",
         "winter morning", "Sunday", "holiday"]
WEATHER = ["sunny", "rainy", "windy", "cloudy", "cold", "warm", "foggy", "snowy"]
HIDING = ["a tree", "the bed", "a rock", "the table", "a bush", "the stairs", "a bridge",
          "the door", "a pile of leaves", "the window"]
ACTIVITIES = [("play", "played"), ("read", "read"), ("sing", "sang"), ("dance", "danced"),
              ("paint", "painted"), ("swim", "swam"), ("run", "ran"), ("draw", "drew"),
              ("cook", "cooked"), ("build a tower", "built a tower"), ("count stars", "counted stars"),
              ("plant seeds", "planted seeds"), ("fly the kite", "flew the kite")]
PROBLEMS = ["it was too heavy", "it was stuck", "it was broken", "it was too high to reach",
            "it was lost in the dark", "the wind blew it away", "it fell into the water",
            "it was covered in mud"]
SOLUTIONS = ["they pulled together", "they used a long stick", "they fixed it with tape",
             "they asked a grown-up", "they made a plan", "they tried again and again",
             "they followed the path", "they washed it in the river"]
MORALS = ["friends make hard things easy", "it is good to ask for help", "patience pays off",
          "sharing makes everyone happy", "small steps lead to big results",
          "being kind is always worth it", "trying again is not a failure",
          "listening is as important as talking"]
FOODS = ["bread", "soup", "rice", "cheese", "eggs", "milk", "tea", "cake", "beans", "pears",
         "grapes", "carrots", "noodles", "oranges", "bananas", "plums"]
FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "pear", "peach",
          "plum", "melon", "kiwi", "fig", "lime"]

# Words for spelling, reversing, uppercasing and counting (chapter 05's verifiable tasks).
WORDS = sorted(set(PLACES + OBJECTS + COLORS + TRAITS + FRUITS + list(ANIMALS) + [
    "hello", "world", "river", "paper", "window", "summer", "winter", "music", "water", "table",
    "garden", "rocket", "planet", "pizza", "bottle", "yellow", "little", "letter", "number",
    "sentence", "question", "answer", "story", "model", "token", "robot", "tiger", "zebra",
]))

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]

# Short, true, project-written general facts (one sentence each).
FACTS = [
    "A week has seven days.", "A year has twelve months.", "A day has twenty-four hours.",
    "An hour has sixty minutes.", "A minute has sixty seconds.",
    "Water freezes at zero degrees Celsius.", "Water boils at one hundred degrees Celsius at sea level.",
    "The sun rises in the east and sets in the west.", "Plants need light and water to grow.",
    "Ice is frozen water.", "A triangle has three sides.", "A square has four equal sides.",
    "A circle has no corners.", "The moon goes around the earth.", "The earth goes around the sun.",
    "Fish breathe with gills.", "Bees make honey.", "Rain falls from clouds.",
    "Snow is cold and white.", "A rainbow appears when sunlight shines through raindrops.",
    "Red, yellow and blue are called primary colors.", "Mixing blue and yellow gives green.",
    "An even number can be split into two equal whole parts.", "An odd number ends in 1, 3, 5, 7 or 9.",
    "The alphabet of English has twenty-six letters.", "The vowels are a, e, i, o and u.",
    "A sentence usually starts with a capital letter.", "A question ends with a question mark.",
    "Trees give shade on hot days.", "Bread is made from flour, water and yeast.",
    "Milk comes from cows, goats and sheep.", "A bicycle has two wheels.", "A car has four wheels.",
    "Sound travels faster in water than in air.", "Light travels faster than sound.",
    "The heart pumps blood through the body.", "People need sleep to stay healthy.",
    "A map shows where places are.", "A clock shows the time.", "A thermometer measures temperature.",
    "A dictionary lists words in alphabetical order.", "Zero is neither positive nor negative.",
    "Ten tens make one hundred.", "Ten hundreds make one thousand.",
]
