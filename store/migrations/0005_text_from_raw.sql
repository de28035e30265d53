-- 0005: a message's body text (what SEARCH BODY/TEXT matches) is no longer
-- stored when it is just its body read as text: text_from is then the
-- offset of the body in the message's bytes, and the text is derived from
-- them at search time (textform.go). NULL: the body text is stored in the
-- text record after the header text, as before.
ALTER TABLE messages ADD COLUMN text_from INTEGER;
