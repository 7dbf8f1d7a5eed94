"""mmSSR's 14 capabilities, each with a short description and a few example VQA instances.

The descriptions are what the offline capability scorer compares a sample's text embedding
with; the examples calibrate that similarity to 0-5 (see `operators/capabilities.py`). They
are written for this project: short, in the question/answer form samples have.
"""

from __future__ import annotations

from operators.schema import CAPABILITIES

__all__ = ["CAPABILITIES", "CAPABILITY_TEXTS"]


# capability -> (description, example question/answer texts)
CAPABILITY_TEXTS = {
    "object spatial understanding": (
        "Where objects are in the image: positions, left or right, above or below, distance, "
        "relative location and layout of objects.",
        (
            "Where is the cup relative to the laptop? The cup is to the left of the laptop.",
            "Which object is at the top right corner of the picture? A lamp.",
            "Is the ball above or below the table? Below.",
        ),
    ),
    "attribute identification": (
        "Identifying visual attributes of objects such as color, shape, size, material and "
        "texture.",
        (
            "What is the color of the woman's jacket? Green.",
            "What shape is the sign? It is a triangle.",
            "What material is the chair made of? Wood.",
        ),
    ),
    "logical deduction": (
        "Logical deduction and puzzles: inferring conclusions from given premises, rules and "
        "patterns.",
        (
            "Which figure completes the pattern in the sequence? Option C.",
            "If all the boxes on the left are blue and this box is on the left, what color is "
            "it? Blue.",
            "Solve the puzzle shown: which piece fits the gap? The second piece.",
        ),
    ),
    "scene understanding": (
        "Understanding the whole scene: the setting, the place, the environment and what the "
        "picture shows overall.",
        (
            "Where was this photo taken? In a busy train station.",
            "Describe the scene. A beach at sunset with people walking along the shore.",
            "Is this an indoor or outdoor scene? Outdoor.",
        ),
    ),
    "fine-grained recognition": (
        "Fine-grained recognition of specific species, breeds, brands, landmarks, models and "
        "famous people.",
        (
            "What breed is this dog? A golden retriever.",
            "Which species of bird is shown? A northern cardinal.",
            "What landmark is in the photo? The Eiffel Tower.",
        ),
    ),
    "language generation": (
        "Writing fluent text about the image: captions, stories, poems, detailed descriptions "
        "and explanations.",
        (
            "Write a short poem inspired by this image. Golden light on quiet water...",
            "Write a caption for this photo for social media. Sunday mornings by the lake.",
            "Describe the image in detail. The picture shows a crowded market where vendors...",
        ),
    ),
    "in-context learning": (
        "Learning from examples given in the prompt: following demonstrations, few-shot "
        "patterns and analogies across several images.",
        (
            "Image 1 is labeled cat, image 2 is labeled dog. What is the label of image 3? Cat.",
            "Following the examples above, answer in the same format for the new image.",
            "Given these example pairs of inputs and outputs, what is the output for the last "
            "one? 12.",
        ),
    ),
    "comparative analysis": (
        "Comparing images or objects: differences, similarities, which is larger, more or better.",
        (
            "What are the differences between the two images? The left one has a red car.",
            "Which of the two bottles is larger? The one on the right.",
            "Compare the two charts and say which shows faster growth. The first one.",
        ),
    ),
    "activity recognition": (
        "Recognizing actions, activities, events and motion of people and objects, often in video.",
        (
            "What is the man doing in the video? He is riding a bicycle.",
            "Where is the runner heading in this clip? Toward the finish line.",
            "What sport are the people playing? Tennis.",
        ),
    ),
    "causal reasoning": (
        "Reasoning about causes and effects: why something happened and what will happen next.",
        (
            "Why is the road wet? Because it has just rained.",
            "What will happen if the glass falls off the table? It will break.",
            "What caused the traffic jam in the picture? An accident blocking the lane.",
        ),
    ),
    "humanities": (
        "Knowledge of history, art, culture, literature, religion, geography and society.",
        (
            "Which art movement does this painting belong to? Impressionism.",
            "In which historical period was this building constructed? The Renaissance.",
            "What festival is being celebrated in the picture? The Lantern Festival.",
        ),
    ),
    "stem knowledge": (
        "Science, technology, engineering and mathematics: physics, chemistry, biology, "
        "geometry problems and equations.",
        (
            "What is the area of the triangle shown in the figure? 24 square units.",
            "Which chemical element does this symbol represent? Sodium.",
            "What force keeps the planet in orbit in the diagram? Gravity.",
        ),
    ),
    "data understanding": (
        "Reading charts, plots, tables and diagrams: values, trends, maxima and comparisons of "
        "data.",
        (
            "Which category has the highest value in the bar graph? Category B.",
            "According to the table, what was the revenue in 2020? 5 million.",
            "What value does the line plot reach at its peak? 42.",
        ),
    ),
    "OCR": (
        "Reading text in images: words, signs, labels, documents, numbers and handwriting.",
        (
            "What does the street sign say? Main Street.",
            "Read the text in the image. It says Welcome Home.",
            "What is the title printed on the book cover? The Old Man and the Sea.",
        ),
    ),
}
