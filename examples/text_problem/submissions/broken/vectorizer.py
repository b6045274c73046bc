from sklearn.feature_extraction.text import TfidfVectorizer


class Vectorizer:
    def __init__(self):
        self.tfidf = TfidfVectorizer(sublinear_tf=True)

    def fit(self, texts, y):
        self.tfidf.fit(texts)

    def transform(self, texts):
        return self.tfidf.transform(texts)
