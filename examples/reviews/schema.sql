-- The reviews example's database, loaded by record.sh into a throwaway server.
CREATE TABLE reviews (
  id     serial PRIMARY KEY,
  sku    text NOT NULL,
  author text NOT NULL,
  stars  int  NOT NULL CHECK (stars BETWEEN 1 AND 5),
  body   text NOT NULL DEFAULT ''
);
INSERT INTO reviews (sku, author, stars, body) VALUES
  ('KB-101', 'ana', 5, 'best keyboard I have owned'),
  ('KB-101', 'ben', 3, 'keys wobble'),
  ('MS-202', 'cam', 4, 'light and precise'),
  ('CB-404', 'ana', 2, 'cable frayed in a month');
